"""What people read: paper-shaped tables, CAM overlays and the HTML report."""
