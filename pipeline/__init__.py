"""The framework (``deeprecipe.pipeline``): version keys, artifact store, manifests, Luigi task
bases, lineage, the ``deeprecipe`` CLI. Imported under the bare name ``pipeline`` (the
checkout's root on sys.path), this folder hands that name to whichever other package owns it."""
if __name__ == "pipeline":
    from deeprecipe import hand_over_bare_name

    hand_over_bare_name(__name__)
