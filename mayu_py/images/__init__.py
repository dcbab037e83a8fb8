"""Images: build the lab node image (lab.py); fetch and verify production images."""
