"""Feed service: posts, follows, hybrid fan-out (push for most authors, pull-and-merge for
celebrities above a configured threshold), home feeds paginated by media_id, hydration
through a metadata cache with leases. PostgreSQL is the truth; Redis holds timelines,
caches and the fan-out queue. Contract: ``proto/trenchcoat/v1/feed.proto``. Not built yet.
"""
