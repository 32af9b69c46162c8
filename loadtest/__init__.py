"""Load testing over gRPC: locust users, an open-loop generator, the SLO verdict and reports."""
