"""The app's links: the core's Scenario <-> query-string codec (rmtllmf_core/experiment/codec.py), which the CLI's
`run --set` shares, so a link and a command line decode alike."""
from rmtllmf_core.experiment.codec import (MAX_KEY_CHARS, MAX_PARAMS, MAX_VALUE_CHARS, UI_PARAMS, decode_value, diff,
    encode_value, flatten, from_query, from_query_keeping, set_path, to_query)
