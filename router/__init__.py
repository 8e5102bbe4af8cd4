"""sms-router: a resilient multi-provider SMS routing engine."""
