"""The worker: Flask app with the Pub/Sub push endpoint, PeekingDuck pipeline, result storage."""
