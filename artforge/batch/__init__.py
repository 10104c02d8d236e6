"""Folder jobs (`artforge stylize IN OUT`): one driver over interchangeable executors.

    plan.py      walk IN, name every output, refuse outputs over inputs (StylizePlan, plan_stylize)
    names.py     output names: unique, and the same whatever the walk order (output_names)
    folder.py    the output folder's lock, the clean-up of a killed run's temporaries, UnwritableOutputError
    manifest.py  what is finished, and made by what: resume, and which files are the tool's own (Manifest)
    report.py    counts, failures, timings; printed and written as JSON (BatchReport)
    options.py   BatchOptions
    executor.py  the seam: the Executor protocol and the Work / Outcome it trades in
    driver.py    run_stylize: the one orchestration (lock, manifest, progress, Ctrl-C, report)
    local.py     LocalExecutor: the models in this process (threaded decode / infer / encode)
    remote.py    RemoteExecutor: an artforge server's StylizeStream
    cluster.py   RayExecutor: the models in Ray actors (`--engine ray`; the optional `ray` extra)

Importing the package loads nothing heavy: remote runs and the CLI import it
without OpenCV or ONNX Runtime (only local.py and cluster.py need them;
cluster.py also needs Ray). See docs/batch.md.
"""
