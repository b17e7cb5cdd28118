"""`make bench`: the data-plane benchmark of modelfleet against raw onnxruntime and a plain
FastAPI + onnxruntime server (the "peer" a user would write instead of a framework).

Every figure it prints is a ratio of two numbers measured in the same run, on the same machine,
with the same request bodies, so a noisy machine moves both sides of each ratio together.
"""
