"""Reading runs back and reporting on them: sweep summaries, `dlexp report`."""
