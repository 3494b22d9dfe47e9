"""The send path, top to bottom: from "this notice goes to these readers" to "this outcome is
recorded".

    fanout      a notice to its readers: plan and queue, chunk by chunk (the fan-out tasks)
    planning    one delivery row per recipient and channel, a chunk at a time
    queueing    the one way a chunk goes to the broker: noted queued, committed, enqueued
    unsent      what the broker did not take (down, unreachable), kept until handed over
    dispatch    a batch: claim, address, compose, hand to a channel session, record
    claims      who may send a row now, for how long, and who may record it (leases, tokens)
    takeover    a dead worker's claims handed to live ones at once
    addressing  who each delivery goes to, checked again at send time
    compose     the message for one reader: email (email_layout, rendering) or push payload
    routes      every channel in one table: audience, compose, "gone" rule, send rate
    outlets     each route bound to the transport of its name (notifier.channels.registry)
    recording   what each outcome does to the row (sent, skipped, retry, failed, gone)

May import the domain, the channels and the low modules; never notifier.web or
notifier.tasks (the caller passes in how to enqueue).
"""
