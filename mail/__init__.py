"""Mail: the SMTP settings, the messages of each event, and the mailer."""
