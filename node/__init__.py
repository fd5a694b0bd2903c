"""swarmd.node: the asyncio shell around the protocol core."""
