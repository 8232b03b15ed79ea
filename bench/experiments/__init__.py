"""Alternative server configurations for experiments (``python -m bench --beacon-config FILE``)."""
