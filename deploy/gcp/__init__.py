"""Deploy frame-fanout to Google Cloud: Cloud Run workers (push service or pull worker pool), Pub/Sub with
dead letters, a GCS bucket, the Locust front door under its own identity.

Usage::

    python -m deploy.gcp plan --project P --region R      # print every gcloud command, in order
    python -m deploy.gcp up   --project P --region R      # create or update (idempotent); push delivery
    python -m deploy.gcp up   --project P --region R --mode pull --instances 2   # a worker pool instead
    python -m deploy.gcp scale --project P --region R --instances 4              # the worker pool's size
    python -m deploy.gcp down --project P --region R      # remove (the bucket only with --delete-data)

Modules: :mod:`deploy.gcp.options` (knobs, defaults, checks), :mod:`deploy.gcp.commands` (the pure
command-building core), :mod:`deploy.gcp.runner` (runs a plan with gcloud), :mod:`deploy.gcp.autoscale`
(the CREMA autoscaler's configuration and set-up, printed only), :mod:`deploy.gcp.cli`.
"""
