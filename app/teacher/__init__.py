"""The teacher: machine → corpus. Few-shot prompts to a general language model write new events,
then inferences for each (event, relation); the filtered output lands in the corpus with its
provenance (the run, backend, model, parameters, template, examples and log-probability).

``prompts`` (templates, example pools, names), ``backends`` (OpenAI-compatible HTTP, a local
transformers model), ``postprocess`` (the paper's filters, with counts), ``params`` (what a run
can ask, checked before any work) and ``runs`` (runs as chunked, resumable jobs).
"""
