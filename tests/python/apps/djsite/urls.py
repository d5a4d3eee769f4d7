import json

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return HttpResponse("django index")


@csrf_exempt
def echo(request):
    return JsonResponse({
        "method": request.method,
        "body": request.body.decode(),
        "query": request.GET.dict(),
        "host": request.get_host(),
        "secure": request.is_secure(),
        "path": request.path,
    })


@csrf_exempt
def upload(request):
    f = request.FILES["file"]
    return JsonResponse({"name": request.POST.get("name"), "size": f.size})


def stream(request):
    return StreamingHttpResponse(("line %d\n" % i for i in range(3)), content_type="text/plain")


urlpatterns = [
    path("", index),
    path("echo/", echo),
    path("upload/", upload),
    path("stream/", stream),
]
