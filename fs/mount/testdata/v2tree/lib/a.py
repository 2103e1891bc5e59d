import os
print("hello")
