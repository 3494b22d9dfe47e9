"""Ways returned mail comes in (the SMTP/LMTP listener); each hands it to the one processor,
notifier.domain.bounces."""
