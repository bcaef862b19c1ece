"""Side-by-side performance measurements of resource-guard (``make bench``).

Every module measures one thing and returns rows of medians and same-run ratios; ``run.py``
prints them as tables. See docs/performance.md.
"""
