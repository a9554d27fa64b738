"""The science (``deeprecipe.stages``), one module per stage, no Luigi. Imported under the bare
name ``stages`` (the checkout's root on sys.path), this folder hands that name to whichever
other package owns it."""
if __name__ == "stages":
    from deeprecipe import hand_over_bare_name

    hand_over_bare_name(__name__)
