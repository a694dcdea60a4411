"""The steps of a run, one module each: prepare, init, rewind_point, then per round score -> mask -> rewind ->
train, and summary. Each has `outputs(run[, key])` (the files it writes, so a finished step is skipped)
and `execute(run[, key])`. `lth.steps.rounds` sequences them in one process; each DVC stage runs one.
"""
