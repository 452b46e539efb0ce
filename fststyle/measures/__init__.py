"""How good a stylization is, in one place: the style/content distances (``quality``), the flicker of a clip
(``flicker``), the regular weave of an output (``weave``), and the evaluator that reports them (``evaluate``,
``python -m fststyle.evaluate``)."""
