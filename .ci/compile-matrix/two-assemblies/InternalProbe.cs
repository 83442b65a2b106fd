// Two-assembly check, negative probe: references library A (internal mode) and tries to use A's copy of
// Topi. It must FAIL to compile with CS0122 (inaccessible due to its protection level), proving the
// default visibility is internal.
namespace Probe
{
    internal static class Program
    {
        private static void Main()
        {
            var options = new Topi.TopiOptions();
            System.Console.WriteLine(options.ClientId);
        }
    }
}
