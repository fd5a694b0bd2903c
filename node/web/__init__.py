"""The web wallet every node serves at `/`, and the JSON routes it (and any client) needs.

The JavaScript sources are in `src/`; `npm run build` bundles them into `dist/`, which is
shipped as package data (the Makefile builds it before installing swarmd).
"""
