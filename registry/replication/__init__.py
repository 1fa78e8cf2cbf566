"""Replication: keep copies of chosen repositories in another registry (push) or of another registry's
repositories here (pull), on events, on a schedule or by hand (docs/replication.md).

``rules`` and ``config`` say what a rule copies; ``remote`` and ``local`` are the two kinds of sides a
copy reads from and writes to; ``copier`` copies one item (a tag with its manifests, blobs and
referrers) between two sides; ``plan`` lists the items of an execution; ``executions`` keeps the state
of executions in storage; ``runner`` runs one execution under the rule's lease; ``worker`` triggers
executions inside ``moorage serve``; ``cli`` is ``moorage replicate`` and ``manual`` its run.
"""
