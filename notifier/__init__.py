"""notifier: self-hosted email and web-push notifications for news sites."""
