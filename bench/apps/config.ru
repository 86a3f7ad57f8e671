# The Unicorn hello worker (Rack): answers `Worker: <pid>`.
run lambda { |_env|
  body = "Worker: #{Process.pid}"
  [200, { 'content-type' => 'text/plain', 'content-length' => body.bytesize.to_s }, [body]]
}
