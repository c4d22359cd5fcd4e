"""Serving a team: one table of throughput, cost, latency, memory and transcripts for every way of running a model.

Every row decodes the same clips with the same model, beam size (the server's, 5 by default) and compute type,
on ``--threads`` CPU threads in all (default: the available cores, 2 on the reference machine):

* ``floor``: Whisper called in this process, one clip after the other, on 1 thread. Its transcripts are the
  reference of every other row's WER (so is its transcript of the mixed-load inputs, taken untimed).
* ``floor-wide``: the same on all the threads.
* ``side``: one in-process 1-thread worker per thread (one model, ``num_workers`` = threads), side by side;
  worker k takes clips k, k + workers, … one after the other.
* ``unbatched-wide`` / ``unbatched-split``: the real server (``python -m app serve``) through the openai SDK,
  each request decoded alone, in one slot of all the threads / one 1-thread slot per thread
  (``max_concurrency``, ``cpu_threads``), at ``--unbatched-levels`` clients (default 1 and 8).
* ``batched-wide`` / ``batched-split``: the server with ``batching: true`` (``max_concurrency`` 16): one batch
  worker of all the threads / one 1-thread batch worker per thread (``batch_workers``), at ``--levels``
  clients (default 1, 2, 4, 8, 16). Client k sends clips k, k + clients, … one after the other. On CPU the
  decoder calls are batched and the encoder forwards are not (``max_encoder_batch_size`` defaults to 1 there);
  ``batched-wide-enc`` / ``batched-split-enc`` batch the encoder forwards too (``max_encoder_batch_size`` 8).
* ``mixed``: on each server layout, the two longest recordings sent at once, and meanwhile a stream of ~5-s
  clips, one every ``--mixed-interval`` seconds; latency percentiles are the short clips'.

Columns: audio seconds per wall second; CPU seconds per audio second (the server process's for server rows,
this process's for in-process rows: less blurred than wall time by other work on a shared machine); p50 and
p95 per-request latency; peak RSS; WER against the 1-thread floor; and where the time goes: the mean batch
size and the encoder and decoder shares of the time spent in CTranslate2 (in-process rows: timed around the
model's calls; batched server rows: from the deltas of ``stt_batch_size`` and ``stt_batch_busy_seconds_total``
on /metrics). Decision lines follow the table: batched throughput at 8 clients against the side-by-side
workers, a lone request batched against unbatched, whether any transcript changed, and the best layout
against the configured default.
"""

# The modules, one job each: cli (the options), benchmark (one run, in order), plan (what the options choose),
# clips (the inputs), layouts (the rows' configurations and server configs), in_process and clients (the
# in-process and the server rows), together (threads released at once), profile (where the time goes), rows (what
# a row measured), figures (a row's figures), table (its cells), decisions (the lines under the table) and report
# (the JSON and Markdown files, and the terminal).
