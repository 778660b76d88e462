"""What runs served entities: the deployment backend interface and its implementations."""
