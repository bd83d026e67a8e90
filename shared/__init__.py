"""The spine of gicho: data, the training loop, checkpoints, metrics and the mesh.

No module here imports a research area (metalearn, nas, snn, transfer).
"""
