"""What operators need to see and do: workers, queues, feeds, failures. Shared by the
dashboard, the `notifier status` command, /readyz and /metrics."""
