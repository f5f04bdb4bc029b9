using System.Text.Json.Serialization;
using Lamina.Runtime;

[assembly: LambdaSerializer(typeof(DefaultLambdaJsonSerializer))]

namespace HelloWorld;

public class Function
{
    private static int s_instances;
    private readonly int _instance;
    private int _calls;

    public Function()
    {
        _instance = Interlocked.Increment(ref s_instances);
    }

    /// <summary>Hello world: "Lamina" → "Hello, Lamina!".</summary>
    public string Handler(string input, ILambdaContext context) => $"Hello, {input}!";

    /// <summary>Everything the context and the environment say, and how often this instance was called.</summary>
    public ContextProbe Context(Stream input, ILambdaContext context)
    {
        using var reader = new StreamReader(input);
        return new ContextProbe
        {
            Event = reader.ReadToEnd(),
            AwsRequestId = context.AwsRequestId,
            FunctionName = context.FunctionName,
            FunctionVersion = context.FunctionVersion,
            InvokedFunctionArn = context.InvokedFunctionArn,
            MemoryLimitInMB = context.MemoryLimitInMB,
            RemainingMs = (long)context.RemainingTime.TotalMilliseconds,
            LogGroupName = context.LogGroupName,
            LogStreamName = context.LogStreamName,
            TraceId = context.TraceId,
            ClientCustom = context.ClientContext?.Custom.TryGetValue("probe", out var probe) == true ? probe : null,
            ExecutionEnv = Environment.GetEnvironmentVariable("AWS_EXECUTION_ENV"),
            FrameworkDescription = System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription,
            Instance = _instance,
            Calls = ++_calls,
        };
    }

    /// <summary>Fails with an exception of its own type, with an inner exception.</summary>
    public string Throw(string input)
    {
        try
        {
            throw new InvalidOperationException("inner cause");
        }
        catch (InvalidOperationException inner)
        {
            throw new HelloWorldException($"failed on {input}", inner);
        }
    }

    /// <summary>Async, and logs through Console and the context logger.</summary>
    public async Task<Dictionary<string, int>> Log(Dictionary<string, int> input, ILambdaContext context)
    {
        Console.WriteLine("console line");
        context.Logger.LogInformation("logger line");
        context.Logger.LogDebug("debug line (hidden at the default level)");
        Console.Error.WriteLine("stderr line");
        await Task.Yield();
        return input.ToDictionary(kv => kv.Key, kv => kv.Value * 2);
    }

    /// <summary>Source-generated JSON (method-level serializer): a POCO round trip.</summary>
    [LambdaSerializer(typeof(SourceGeneratorLambdaJsonSerializer<HelloJsonContext>))]
    public static Receipt Order(Order order, ILambdaContext context) => new()
    {
        OrderId = order.OrderId,
        Total = order.Lines.Sum(l => l.Quantity * l.UnitPrice),
        Items = order.Lines.Count,
        Customer = order.Customer,
    };

    /// <summary>No input, no output.</summary>
    public static Task Nothing() => Task.CompletedTask;
}

public sealed class HelloWorldException(string message, Exception inner) : Exception(message, inner);

public sealed class ContextProbe
{
    public string? Event { get; set; }
    public string? AwsRequestId { get; set; }
    public string? FunctionName { get; set; }
    public string? FunctionVersion { get; set; }
    public string? InvokedFunctionArn { get; set; }
    public int MemoryLimitInMB { get; set; }
    public long RemainingMs { get; set; }
    public string? LogGroupName { get; set; }
    public string? LogStreamName { get; set; }
    public string? TraceId { get; set; }
    public string? ClientCustom { get; set; }
    public string? ExecutionEnv { get; set; }
    public string? FrameworkDescription { get; set; }
    public int Instance { get; set; }
    public int Calls { get; set; }
}

public sealed class Order
{
    public string OrderId { get; set; } = "";
    public string? Customer { get; set; }
    public List<OrderLine> Lines { get; set; } = [];
}

public sealed class OrderLine
{
    public string Sku { get; set; } = "";
    public int Quantity { get; set; }
    public decimal UnitPrice { get; set; }
}

public sealed class Receipt
{
    public string OrderId { get; set; } = "";
    public decimal Total { get; set; }
    public int Items { get; set; }
    public string? Customer { get; set; }
}

[JsonSerializable(typeof(Order))]
[JsonSerializable(typeof(Receipt))]
public partial class HelloJsonContext : JsonSerializerContext;
