"""Compaction: turn a masked ticket into a physically smaller dense network, and measure what it buys.

One job per module (import from the module that holds a name; this package imports nothing):
- units: dead-unit analysis (which neurons / channels can go, and why);
- surgery: the smaller network itself (slicing, folding constants of removed units);
- export: the `torch.export` program written to disk, and loading it back;
- measure: parameters, MACs, CPU speed, the dense reference, the output check;
- runner: the run driver, what `lth compact RUN` does;
- semi_structured: N:M (2:4) tickets on sparse tensor cores, `lth compact --nm`.
"""
