"""The GPU job queue: jobs as database rows, workers in their own processes, demo
modules (issue #6). Torch is imported only inside this package."""
