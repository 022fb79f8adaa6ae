"""TMC Console's user documentation, installed as ``app.docs`` so Help can show it offline."""
