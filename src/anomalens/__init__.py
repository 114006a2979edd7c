"""anomalens"""
