"""The deterministic swarm simulator beside the sans-I/O core: it imports the core, the core
never imports it.

- simulator.py: the discrete-event loop, nodes, durable stores, faults, event dispatch;
- network.py: links, delays, loss, duplication, partitions;
- workload.py: the simulated clients; swarm.py: one scenario run (cores, workload, finality
  log); checkers.py: what every run must satisfy;
- scenarios/: the registry (`run_scenario`, `summarize`, ...) and one module per family;
- harness.py: the small in-memory wiring the protocol tests use.
"""
