from revassure import freeze as freeze_state


def freeze(request):
    """The active freeze (or None), for the banner on every admin page."""
    if not request.path.startswith("/admin/"):
        return {}
    return {"active_freeze": freeze_state.current()}
