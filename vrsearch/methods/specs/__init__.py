"""One spec module per method file of :mod:`vrsearch.methods`: the method's ``Params``
(every knob, with the paper's defaults), the data it reads, the terms it logs, its
citation and the name of its builder, registered with
:func:`vrsearch.registry.register_method`. Spec modules import neither torch nor an
implementation: a study's driver (``vrsearch validate``/``run``/``resume``) validates
every method's knobs without either, and a trial imports the implementation when it
builds the method. ``anatomical`` holds the knobs MONA and ARCO share."""
