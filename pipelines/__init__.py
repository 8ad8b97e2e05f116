"""The train and inference pipelines, built from ``components/`` with the Kubernetes settings here.

``build_train`` / ``build_inference`` (and ``build_stage`` for one task) return pipeline functions for
given images; ``compile_all`` writes them; ``run_local`` runs a compiled file through kfp.local;
``submit`` sends one to a cluster.
"""
