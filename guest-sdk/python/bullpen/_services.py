"""Where the SDK's calls go: the host's imports inside a component, or the
record of a test job (``bullpen.testing``) outside one, so that ``import
bullpen`` works in both and a processor can be unit-tested with pytest."""

# The services of the attempt running now: the component's, made on first
# use, or the newest test job's.
active = None


def current():
    """The services ``log``, ``worker`` and ``Queue`` act on."""
    global active
    if active is None:
        try:
            from bullpen._component import ComponentServices
        except ImportError:
            raise RuntimeError(
                "bullpen's host services exist inside a component (bullpen build) "
                "or for a job made by bullpen.testing.test_job"
            ) from None
        active = ComponentServices()
    return active
