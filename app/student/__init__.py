"""The student step: corpus → machine. Train a causal LM on an export's student split
(``train``), let it write inferences (``generate``), and judge them against the teacher's in a
blind ``evaluation`` campaign (``evaluation``, ``table``); ``runs`` is the job behind every door.
"""
