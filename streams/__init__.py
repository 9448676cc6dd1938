"""The stream processor: faust agents around pure folds, and the sinks they hand off to."""
