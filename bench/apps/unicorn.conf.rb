# Unicorn settings for the benchmark: defaults (timeout 60 s, no preload_app) except the
# worker count, the address, and a ready marker ($READY_DIR/<pid>) once a worker is ready.
worker_processes Integer(ENV.fetch('WORKERS', '2'))
listen "#{ENV.fetch('HOST', '127.0.0.1')}:#{ENV.fetch('PORT')}"
after_worker_ready do |_server, _worker|
  dir = ENV['READY_DIR']
  File.write(File.join(dir, Process.pid.to_s), '') if dir
end
