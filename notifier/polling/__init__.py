"""Reading the sites' feeds: one feed's fetch, bounded as a whole (fetch), and the feeds node
that runs fetches beside each sending node (node). The rules for what a feed says live in
notifier.domain.feeds."""
