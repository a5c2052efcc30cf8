"""Load benchmarks that run Marquee as real processes and measure it from outside.

``stack`` starts Marquee all-in-one or distributed (each service its own process on
PostgreSQL, Redis and NATS); ``load`` fires requests at it; ``flashsale`` is the hot-sale
scenario; ``hello`` is the hello-world ceiling of the same server stack.
"""
