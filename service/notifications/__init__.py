"""What: notifications stored in each tenant's schema, how they are published, read and authorised."""
