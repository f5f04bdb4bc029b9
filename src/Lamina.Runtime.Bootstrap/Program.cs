using Lamina.Runtime.Bootstrap;
using Lamina.Runtime.Hosting;

// _HANDLER (or the first argument) is Assembly::Namespace.Type::Method; the function's code is in LAMBDA_TASK_ROOT.
var handler = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("_HANDLER") ?? "";
var taskRoot = Environment.GetEnvironmentVariable("LAMBDA_TASK_ROOT") is { Length: > 0 } root ? root : Directory.GetCurrentDirectory();
return await RuntimeLoop.RunAsync(() => HandlerBinder.Bind(handler, taskRoot), CancellationToken.None);
