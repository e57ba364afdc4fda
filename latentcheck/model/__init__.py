"""The report model: typed result objects and their JSON boundary.

``base`` holds the low-level types the statistics modules return (``TestResult``,
``Finding``, ``Normalization``) and the one JSON conversion (``to_jsonable``); it imports
nothing else of latentcheck, so a statistics module can use it without importing the report.
Nothing in this package imports a renderer (``render/`` reads the model, never the reverse).
"""
