"""Reference conformance suite for recurrent layers (SimpleRNN, LSTM, GRU).

Data flows one way: spec -> cases -> reference -> fixtures -> adapters ->
compare -> results -> report. See README.md.
"""

__version__ = "0.1.0"
