"""A Flask app with the features real apps lean on: routing, JSON, forms,
file uploads, streaming, cookies, redirects and error handlers."""

from flask import Flask, Response, jsonify, redirect, request, stream_with_context, url_for

app = Flask(__name__)


@app.route("/")
def index():
    return "flask index"


@app.route("/json", methods=["POST"])
def json_echo():
    data = request.get_json()
    return jsonify(received=data, method=request.method, remote=request.remote_addr)


@app.route("/form", methods=["POST"])
def form():
    upload = request.files.get("file")
    return jsonify(name=request.form.get("name"), file=upload.read().decode() if upload else None)


@app.route("/stream")
def stream():
    def gen():
        for i in range(3):
            yield "chunk %d\n" % i

    return Response(stream_with_context(gen()), mimetype="text/plain")


@app.route("/cookie")
def cookie():
    resp = jsonify(seen=request.cookies.get("flavour"))
    resp.set_cookie("flavour", "oat")
    return resp


@app.route("/go")
def go():
    return redirect(url_for("index"))


@app.route("/fail")
def fail():
    raise ValueError("flask view failed")


@app.errorhandler(404)
def not_found(e):
    return jsonify(error="not here"), 404
