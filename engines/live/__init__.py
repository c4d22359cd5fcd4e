"""The engine side of realtime sessions (app/serving/realtime): input codecs, incremental VAD and turns, decoding.

One name per layer: "realtime" is the session and its protocol (app/), this package is what those
sessions run on (engines/); elsewhere "live" only names the decodes of a turn that is still growing.
"""
