"""Declarative workflows: documents (Amazon States Language) that run on the engine.

``sagaline.definitions.asl`` loads a state machine into an ordinary workflow; nothing here
talks SQL: what a machine does durably, it does through the engine's steps and timers.
"""
