"""The load generator: ``hsscp storescu``, ``hsscp echoscu`` and ``hsscp bench``.

An asyncio (uvloop) requestor drives the sans-IO engine over K associations
per process and P processes; files are streamed as they are, optionally
with new UIDs patched into the bytes, paced, and every outcome is counted.
"""
