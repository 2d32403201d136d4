#!/usr/bin/env python3
"""Asks the top-level X windows named NAME to close, as a window manager does for Alt+F4 or a
title bar's close button: the ICCCM WM_DELETE_WINDOW client message. The end-to-end test runs
the app under Xvfb with no window manager, so it sends the message itself.

Usage: wm-close.py NAME   (the display from $DISPLAY). Prints how many windows it asked and
exits 1 when none had that name.

Written with ctypes against libX11 (already there for Xvfb and GTK) so the tests need no
Python package; no tool on Debian 12 sends this message (xdotool 3.20160805 cannot, wmctrl
needs a window manager)."""

import ctypes
import ctypes.util
import sys

Window = ctypes.c_ulong
Atom = ctypes.c_ulong


class ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", Window),
        ("message_type", Atom),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class XEvent(ctypes.Union):
    _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]


CLIENT_MESSAGE = 33
CURRENT_TIME = 0


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    name = sys.argv[1].encode()
    x = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11") or "libX11.so.6")
    x.XOpenDisplay.restype = ctypes.c_void_p
    x.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x.XDefaultRootWindow.restype = Window
    x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x.XQueryTree.argtypes = [
        ctypes.c_void_p,
        Window,
        ctypes.POINTER(Window),
        ctypes.POINTER(Window),
        ctypes.POINTER(ctypes.POINTER(Window)),
        ctypes.POINTER(ctypes.c_uint),
    ]
    x.XFetchName.argtypes = [ctypes.c_void_p, Window, ctypes.POINTER(ctypes.c_char_p)]
    x.XInternAtom.restype = Atom
    x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x.XSendEvent.argtypes = [ctypes.c_void_p, Window, ctypes.c_int, ctypes.c_long, ctypes.POINTER(XEvent)]
    x.XFree.argtypes = [ctypes.c_void_p]
    x.XFlush.argtypes = [ctypes.c_void_p]
    x.XCloseDisplay.argtypes = [ctypes.c_void_p]

    display = x.XOpenDisplay(None)
    if not display:
        print("cannot open the display (is DISPLAY set?)", file=sys.stderr)
        return 2
    protocols = x.XInternAtom(display, b"WM_PROTOCOLS", 0)
    delete = x.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
    root, parent = Window(), Window()
    children = ctypes.POINTER(Window)()
    count = ctypes.c_uint()
    x.XQueryTree(display, x.XDefaultRootWindow(display), ctypes.byref(root), ctypes.byref(parent),
                 ctypes.byref(children), ctypes.byref(count))
    asked = 0
    for i in range(count.value):
        window = children[i]
        title = ctypes.c_char_p()
        if x.XFetchName(display, window, ctypes.byref(title)) and title.value is not None:
            matches = title.value == name
            x.XFree(title)
            if not matches:
                continue
            event = XEvent()
            event.xclient.type = CLIENT_MESSAGE
            event.xclient.window = window
            event.xclient.message_type = protocols
            event.xclient.format = 32
            event.xclient.data[0] = delete
            event.xclient.data[1] = CURRENT_TIME
            x.XSendEvent(display, window, 0, 0, ctypes.byref(event))
            asked += 1
    if children:
        x.XFree(children)
    x.XFlush(display)
    x.XCloseDisplay(display)
    print(f"asked {asked} window(s) named {name.decode()!r} to close")
    return 0 if asked else 1


if __name__ == "__main__":
    sys.exit(main())
